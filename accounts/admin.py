from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import Selfie, User


@admin.register(User)
class FindMeUserAdmin(UserAdmin):
    list_display = ("username", "email", "is_staff", "date_joined")


@admin.register(Selfie)
class SelfieAdmin(admin.ModelAdmin):
    # "Needs a new photo" (status retake): the face engine cannot search with it; the reason
    # is in ``error``, and the member is asked for a new one on their selfie page.
    list_display = ("user", "status", "consent_at", "indexed_at", "attempts", "error")
    list_filter = ("status",)
    search_fields = ("user__username", "user__email")
    readonly_fields = ("consent_at", "engine", "engine_ref", "indexed_at", "attempts", "error")
    raw_id_fields = ("user",)
